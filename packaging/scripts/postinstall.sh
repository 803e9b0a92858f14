#!/bin/sh
# After install or upgrade (deb: configure; rpm: $1 is 1 or 2): the user
# and directories the unit needs, systemd told of the unit. The service is
# never started by the package; on upgrade it is restarted only if it was
# running (try-restart), so a new binary takes over.
set -e
case "$1" in
  configure|1|2|"") ;;
  *) exit 0 ;;
esac
systemd-sysusers collabsync.conf || echo "collabsync: systemd-sysusers failed; create the collabsync user by hand" >&2
systemd-tmpfiles --create collabsync.conf || true
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # deb: $2 is the version upgraded from; rpm: $1 is 2 on upgrade.
  if [ -n "$2" ] || [ "$1" = 2 ]; then
    systemctl try-restart collabsync.service || true
  fi
fi
exit 0
