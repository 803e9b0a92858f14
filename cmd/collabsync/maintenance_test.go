package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMaintenanceWindow: serve with the nss target in a maintenance window
// that ends a few seconds after start: a change made during the window is
// planned and held (the files keep the old state; the metric, /status and
// the status command say so; nothing goes to the retry queue), and is
// applied right after the window ends. A calendar's weekly event shows as
// the next window; an event added to the calendar while serve runs holds
// the next change until its end in the same way.
func TestMaintenanceWindow(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	e.sync(t)
	// The window opens once serve has read its target (in a window a
	// target is not read at all: it may be down).
	begin := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
	end := begin.Add(5 * time.Second)
	// The weekly event three days from now: at a fixed hour it was the
	// window in force when the test ran in it (Mondays 06:00-06:30 UTC).
	weekly := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Hour)
	cal := writeFile(t, filepath.Join(t.TempDir(), "downtimes.ics"), strings.ReplaceAll(fmt.Sprintf(`BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//centre//downtimes//EN
BEGIN:VEVENT
UID:weekly@centre
DTSTAMP:20261101T000000Z
DTSTART:%s
DTEND:%s
RRULE:FREQ=WEEKLY;BYDAY=%s
SUMMARY:weekly patching of the login nodes
CATEGORIES:login
END:VEVENT
END:VCALENDAR
`, weekly.Format("20060102T150405Z"), weekly.Add(30*time.Minute).Format("20060102T150405Z"), strings.ToUpper(weekly.Weekday().String()[:2])), "\n", "\r\n"))
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	window := fmt.Sprintf("    maintenance:\n      windows: [{start: %q, end: %q, summary: login nodes reinstalled}]\n      calendar: %s\n      services: [login]\n",
		begin.Format(time.RFC3339), end.Format(time.RFC3339), cal)
	doc := strings.Replace(string(data), "    dir: \""+e.outDir+"\"\n", "    dir: \""+e.outDir+"\"\n"+window, 1)
	if doc == string(data) {
		t.Fatal("could not add the window")
	}
	writeFile(t, e.config, doc)

	r := collabsync(t, e.config, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "login nodes reinstalled") {
		t.Errorf("status: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := startServe(t, e.config)
	d.waitReady(t)
	time.Sleep(time.Until(begin) + 100*time.Millisecond)
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 5*time.Second, "the change held", func() bool {
		m := d.status(t).Targets["nss"].Maintenance
		return d.metric(`collabsync_target_in_maintenance{target="nss"}`) == "1" && m != nil && m.HeldChanges > 0
	})
	if strings.Contains(e.getent(t, "getent group atlas"), "trent") {
		t.Fatal("a change reached the files during the maintenance window")
	}
	st := d.status(t)
	if m := st.Targets["nss"].Maintenance; m == nil || m.Current == nil || m.Current.Summary != "login nodes reinstalled" || m.HeldChanges == 0 ||
		m.Next == nil || m.Next.Summary != "weekly patching of the login nodes" {
		data, _ := json.Marshal(st.Targets["nss"])
		t.Errorf("/status: %s", data)
	}
	if v := d.metric("collabsync_retry_queue_targets"); v != "0" {
		t.Errorf("held changes went to the retry queue: %s", v)
	}
	eventually(t, 15*time.Second, "applied once the window ended", func() bool {
		return strings.Contains(e.getent(t, "getent group atlas"), "trent")
	})
	if late := time.Since(end); late > 3*time.Second {
		t.Errorf("applied %v after the window ended", late)
	}
	eventually(t, 2*time.Second, "out of maintenance", func() bool { return d.metric(`collabsync_target_in_maintenance{target="nss"}`) == "0" })

	// The calendar, edited while serve runs, announces a downtime of the
	// login nodes from now: the next change waits for its end too.
	end = time.Now().Add(5 * time.Second).UTC().Truncate(time.Second)
	event := fmt.Sprintf("BEGIN:VEVENT\nUID:now@centre\nDTSTAMP:20261101T000000Z\nDTSTART:%s\nDTEND:%s\nSUMMARY:emergency downtime\nCATEGORIES:login\nEND:VEVENT\nEND:VCALENDAR\n",
		time.Now().Add(-time.Minute).UTC().Format("20060102T150405Z"), end.Format("20060102T150405Z"))
	data, _ = os.ReadFile(cal)
	os.WriteFile(cal, []byte(strings.Replace(string(data), "END:VCALENDAR\r\n", strings.ReplaceAll(event, "\n", "\r\n"), 1)), 0o644)
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 5*time.Second, "the change held by the calendar's event", func() bool {
		m := d.status(t).Targets["nss"].Maintenance
		return m != nil && m.Current != nil && m.Current.Summary == "emergency downtime" && m.HeldChanges > 0
	})
	if !strings.Contains(e.getent(t, "getent group atlas"), "trent") {
		t.Fatal("a change reached the files during the calendar's downtime")
	}
	eventually(t, 15*time.Second, "applied once the calendar's downtime ended", func() bool {
		return !strings.Contains(e.getent(t, "getent group atlas"), "trent")
	})
	if late := time.Since(end); late > 3*time.Second {
		t.Errorf("applied %v after the calendar's downtime ended", late)
	}
	d.stop(t)
}
