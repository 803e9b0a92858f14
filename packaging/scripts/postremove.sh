#!/bin/sh
# After removal: systemd forgets the unit. The state directory
# (/var/lib/collabsync: rule history, accounting) and the collabsync user
# are kept even on purge, as Debian keeps a removed package's data that
# is not configuration: remove them by hand when they are no longer wanted.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
