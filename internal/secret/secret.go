// Package secret reads secrets from files (a systemd credential, a file
// of mode 0600), never from the configuration or the command line.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read reads a password file, dropping a trailing newline. An empty
// secret is refused: LDAP treats a simple bind with an empty password as
// an unauthenticated bind that "succeeds", and a relay may accept one.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return s, nil
}
