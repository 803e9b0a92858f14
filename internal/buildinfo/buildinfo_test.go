package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Revision: "0123456789ab", Time: "2026-12-04T18:00:00Z", Modified: true, GoVersion: "go1.26.8"}
	want := "v1.2.3 (revision 0123456789ab, modified, 2026-12-04T18:00:00Z) go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH
	if got := i.String(); got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got := Read("v9.9.9"); got.Version != "v9.9.9" || !strings.HasPrefix(got.GoVersion, "go") {
		t.Errorf("Read: %+v", got)
	}
}
