// Package owner keeps files that root writes in another user's directory
// that user's: an admin's command run as root beside the service (a sync,
// an approve) leaves nothing in the service's state the service cannot
// open.
package owner

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Like gives f, which this process has just created or opened to write,
// the owner and group of ref (the file it replaces; its directory when
// there is none) when this process runs as root and ref belongs to
// another user. Otherwise it does nothing.
func Like(f *os.File, ref string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(ref)
	if os.IsNotExist(err) {
		fi, err = os.Stat(filepath.Dir(ref))
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s to the owner of %s: %w", f.Name(), ref, err)
	}
	return nil
}
