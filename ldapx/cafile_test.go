package ldapx

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestReadCAFile: a CA file Go cannot use says why (a negative serial
// number, as Samba's self-made CA may have, made here with openssl since
// Go refuses to), rather than "holds no PEM certificate"; a file with no
// certificate says that; a good one loads.
func TestReadCAFile(t *testing.T) {
	testharness.Require(t, "openssl")
	dir := t.TempDir()
	negative := filepath.Join(dir, "negative.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(dir, "key.pem"), "-out", negative, "-subj", "/CN=Samba-like CA", "-days", "1",
		"-set_serial", "-1234567").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	good, err := testharness.NewCertFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("not a certificate\n"), 0o644)
	for _, c := range []struct{ path, want string }{
		{negative, "negative.pem: no certificate Go can use: certificate 1: x509: negative serial number (Samba's self-made CA has one"},
		{empty, "empty.pem holds no PEM certificate"},
		{good.CA, ""},
	} {
		_, err := ReadCAFile(c.path)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", filepath.Base(c.path), err, c.want)
		}
	}
}
