#!/bin/sh
# Before removal (deb: remove; rpm: $1 is 0), not before an upgrade: the
# service stops.
set -e
case "$1" in
  remove|0) ;;
  *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl stop collabsync.service || true
fi
exit 0
