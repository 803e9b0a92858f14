package directory

import "strings"

// ValidAddress reports whether s is a plain e-mail address, local@domain,
// that every downstream format can carry as it is: an aliases(5) value,
// a Mailman subscriber, a command-line argument. The local part is
// letters, digits and . _ + = - (not first, no two dots in a row; no %,
// which a mail server may route as a second address: spy%evil.org@here
// goes to evil.org), the
// domain dot-separated letters, digits and inner hyphens. So no address
// can be a |command, a /file, an :include:, a second value after a comma,
// a quoted string, an option, or carry a space or control character; a
// directory value outside this is not used as an address at all.
func ValidAddress(s string) bool {
	if len(s) > 254 {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || len(local) > 64 || domain == "" {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case isAlnum(c), c == '_', c == '+', c == '=':
		case c == '.' || c == '-':
			if i == 0 || c == '.' && (local[i-1] == '.' || i == len(local)-1) {
				return false
			}
		default:
			return false
		}
	}
	// The domain's labels, without splitting it (an allocation per
	// address: at 1M users a fifth of the users' resolution).
	for rest, more := domain, true; more; {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
