package testharness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StopGroup ends a process group: SIGTERM, then SIGKILL to whatever is
// left after grace, and returns once no live process remains in it. A
// server's leader may exit before its workers, which still write into
// the server's directory for a moment: removing that directory before
// they are gone fails ("directory not empty").
func StopGroup(pgid int, grace time.Duration) error {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	killed := false
	for {
		n := groupMembers(pgid)
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("process group %d: %d processes left after SIGKILL", pgid, n)
			}
			syscall.Kill(-pgid, syscall.SIGKILL)
			killed, deadline = true, time.Now().Add(10*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// GroupAlive reports whether a live process (not a zombie) of the group
// is left.
func GroupAlive(pgid int) bool { return groupMembers(pgid) > 0 }

// groupMembers counts the processes of a group that are not zombies (a
// zombie writes nothing, and in a container nobody may reap it).
func groupMembers(pgid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			n++
		}
	}
	return n
}
