# Sourced by the scripts: create .venv and (re)install the project into it when setup.cfg changed.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.ckite-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi

# ensure_chromium: Debian's headless Chromium and its WebDriver for the console's browser test,
# installed where that is possible (root with apt-get, as in CI); elsewhere that test is skipped.
# A function, called by scripts/test only: running a cluster needs no browser.
ensure_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then return 0; fi
    echo "installing chromium and chromium-driver for the browser test (apt-get)..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
        >/dev/null 2>&1 || echo "could not install chromium; the browser test will be skipped" >&2
}
