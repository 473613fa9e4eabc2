// Durations as people say them ("148 ms", "1.2 s", "2 min 13 s"), computed from the numeric ...Ms
// fields of /status. The JSON keeps CKite's own strings ("2.minutes+13.seconds+148.milliseconds")
// for scripts that read them; a page shows the two largest units and nothing finer than it needs.

const UNITS = [["d", 86_400_000], ["h", 3_600_000], ["min", 60_000], ["s", 1_000]];

export function humanDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "never";   // CKite's "Never": no ACK yet
  const value = Math.max(Math.round(ms), 0);
  if (value < 1_000) return `${value} ms`;
  if (value < 10_000) return `${Math.floor(value / 100) / 10} s`;   // "1.2 s", "5 s"
  if (value < 60_000) return `${Math.floor(value / 1_000)} s`;
  const index = UNITS.findIndex(([, size]) => value >= size);
  const [name, size] = UNITS[index];
  const [smallName, smallSize] = UNITS[index + 1];
  const whole = Math.floor(value / size);
  const rest = Math.floor((value % size) / smallSize);
  return rest ? `${whole} ${name} ${rest} ${smallName}` : `${whole} ${name}`;
}
