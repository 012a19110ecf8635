# Shared by the bench scripts (sourced, not run): finds the qairt binary and the Python venv.
#   resolve_qairt PATH    -> $qairt (absolute; `cargo build --release` first when PATH is empty)
#   resolve_python PATH   -> $python ($QAIRT_VENV, ~/.cache/qairt-venv when empty)

resolve_qairt() {
    qairt=$1
    if [[ -z "$qairt" ]]; then
        cargo build --release --quiet
        qairt=$repo/target/release/qairt
    fi
    qairt=$(cd "$(dirname "$qairt")" && pwd)/$(basename "$qairt")
    [[ -x "$qairt" ]] || { echo "qairt binary $qairt not found" >&2; exit 1; }
}

resolve_python() {
    python=$1
    if [[ -z "$python" ]]; then
        for candidate in "${QAIRT_VENV:-$HOME/.cache/qairt-venv}/bin/python"; do
            if [[ -x "$candidate" ]]; then python=$candidate; break; fi
        done
    fi
    [[ -n "$python" && -x "$python" ]] || { echo "no Python venv found: run scripts/setup-python.sh or pass --python" >&2; exit 1; }
}
