# Sourced by the scripts: create .venv and (re)install the project into it when setup.cfg changed.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.ckite-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    # pip's output goes to a log, shown only if the install fails: an editable install of this
    # layout always has setuptools print a notice about folders shadowing the package.
    echo "installing ckite and its test and dev tools into .venv (log: .venv/install.log)..." >&2
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[test,dev]'; } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "installing into .venv failed (output above, also in .venv/install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi

# ensure_test_packages: Debian's headless Chromium and its WebDriver (the console's browser test)
# and iptables (the fault suite's network-namespace partitions), installed where that is
# possible (root with apt-get, as in CI); elsewhere the browser test is skipped and the fault
# suite falls back to its TCP proxies. Called by scripts/test only: a cluster needs neither.
ensure_test_packages() {
    local missing=()
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing+=(chromium chromium-driver)
    command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
    if [ ${#missing[@]} -eq 0 ]; then return 0; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then return 0; fi
    echo "installing ${missing[*]} for the browser and fault-injection tests (apt-get)..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
        >/dev/null 2>&1 || echo "could not install ${missing[*]}; those tests skip or fall back" >&2
}
