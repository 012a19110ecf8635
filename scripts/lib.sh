# Shared by scripts/kill9.sh, scripts/concurrency.sh and scripts/diskfull.sh (sourced; `repo`
# is the repository root).

# make_project DIR: a copy of the embedded default project (qairt.toml and examples/digits).
make_project() {
    mkdir -p "$1/examples"
    cp "$repo/qairt.toml" "$1/"
    cp -r "$repo/examples/digits" "$1/examples/"
}

# tree_digest DIR: one digest of every file's path and bytes under DIR.
tree_digest() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }
