package notices

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTemplatesChecked: a replaced template that names a field the data
// does not have, does not parse, lacks its Subject line, or a file that
// names no template, is refused by Validate naming the file; the defaults
// pass; a subject cannot be made two lines by the data.
func TestTemplatesChecked(t *testing.T) {
	s := Kind().NewSettings().(*Settings)
	s.From = "collabsync@example.org"
	if probs := s.Validate(); len(probs) != 0 {
		t.Fatalf("the defaults: %v", probs)
	}
	for _, tc := range []struct{ file, text, want string }{
		{"account-active.tmpl", "Subject: {{.Nope}}\nbody\n", "Nope"},
		{"review-due.tmpl", "Subject: {{.Subject\n", "review-due.tmpl"},
		{"mail.tmpl", "Dear {{.Name}}\n", "Subject"},
		{"acount-active.tmpl", "Subject: x\n", "no template has that name"},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.text), 0o644)
		s.Templates = dir
		probs := s.Validate()
		if len(probs) != 1 || probs[0].Key != "templates" || !strings.Contains(probs[0].Msg, tc.want) {
			t.Errorf("%s %q: %v, want a templates problem saying %q", tc.file, tc.text, probs, tc.want)
		}
	}
	ts, err := loadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ts.compose("Site\r\nBcc: evil@example.org", "notices", []Notice{{Fact: ReviewDue, Subject: "atlas\nBcc: x@example.org", To: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(r.Subject, "\r\n") {
		t.Errorf("a subject of two lines: %q", r.Subject)
	}
}

// FuzzTemplate: any text as a replaced template, and any data in its
// notice, is refused or renders; a rendered subject is one line. (The
// text is parsed as loadTemplates parses a file, without the file: a
// slow target meets Go's spurious fuzztime deadline.)
func FuzzTemplate(f *testing.F) {
	defaults, err := loadTemplates("")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Subject: {{.Site}}: {{.Subject}}\nbody {{.Name}}\n", "atlas", "Alice")
	f.Add("Subject: {{range .Collaborations}}{{.}}{{end}}\n{{if .Days}}x{{end}}", "a\r\nb", "\x00")
	f.Fuzz(func(t *testing.T, text, subject, name string) {
		tmpl, err := parseTemplate("account-active.tmpl", []byte(text))
		if err != nil {
			return
		}
		ts := templates{"mail": defaults["mail"], string(AccountActive): tmpl}
		r, err := ts.compose("Site", "notices", []Notice{{Fact: AccountActive, Subject: subject, To: "alice", Name: name}})
		if err != nil {
			return
		}
		if strings.ContainsAny(r.Subject, "\r\n") {
			t.Fatalf("a subject of two lines: %q", r.Subject)
		}
	})
}
