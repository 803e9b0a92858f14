package ldapx

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadCAFile reads the PEM certificates of a CA file into a pool. A
// certificate Go cannot use is named with Go's reason, rather than the
// file being said to hold none: Samba's self-made CA, for one, has a
// negative serial number, which Go refuses.
func ReadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	used, seen := 0, 0
	var errs []error
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		seen++
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate %d: %w", seen, err))
			continue
		}
		pool.AddCert(c)
		used++
	}
	switch {
	case seen == 0:
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	case used == 0:
		err := fmt.Errorf("%s: no certificate Go can use: %w", path, errors.Join(errs...))
		if strings.Contains(err.Error(), "negative serial number") {
			err = fmt.Errorf("%w (Samba's self-made CA has one: give the domain controller a certificate from a CA of your own, docs/SERVERS.md)", err)
		}
		return nil, err
	}
	return pool, nil
}
