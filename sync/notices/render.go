package notices

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed templates/*.tmpl
var defaults embed.FS

// templates are a set of mail templates: mail.tmpl wraps one mail to one
// recipient, and a template per fact renders each notice in it. Each
// begins with a "Subject: " line; the rest is the body.
type templates map[string]*template.Template

// loadTemplates parses the embedded defaults, each replaced by the file
// of the same name in dir when dir has one (dir "" uses the defaults).
// A file in dir that names no template is an error: a misspelt name would
// otherwise be ignored.
func loadTemplates(dir string) (templates, error) {
	set := templates{}
	names, err := fs.Glob(defaults, "templates/*.tmpl")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := filepath.Base(name)
		text, err := defaults.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			if own, err := os.ReadFile(filepath.Join(dir, base)); err == nil {
				text = own
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		t, err := parseTemplate(base, text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, base), err)
		}
		set[strings.TrimSuffix(base, ".tmpl")] = t
	}
	if dir != "" {
		own, err := filepath.Glob(filepath.Join(dir, "*.tmpl"))
		if err != nil {
			return nil, err
		}
		for _, f := range own {
			if _, ok := set[strings.TrimSuffix(filepath.Base(f), ".tmpl")]; !ok {
				return nil, fmt.Errorf("%s: no template has that name (the names: %s)", f, strings.Join(set.names(), ", "))
			}
		}
	}
	return set, nil
}

// parseTemplate parses one template file's text.
func parseTemplate(name string, text []byte) (*template.Template, error) {
	if !strings.HasPrefix(string(text), "Subject: ") {
		return nil, errors.New("the first line must be \"Subject: ...\"")
	}
	return template.New(name).Option("missingkey=error").Parse(string(text))
}

func (ts templates) names() []string {
	var out []string
	for n := range ts {
		out = append(out, n+".tmpl")
	}
	return sorted(out)
}

// rendered is a template's output: the subject and the body.
type rendered struct{ Subject, Body string }

func (ts templates) render(name string, data any) (rendered, error) {
	t, ok := ts[name]
	if !ok {
		return rendered{}, fmt.Errorf("no template %s.tmpl", name)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return rendered{}, err
	}
	first, body, _ := strings.Cut(b.String(), "\n")
	subject := strings.TrimSpace(strings.TrimPrefix(first, "Subject: "))
	// One line, whatever the data held: a header cannot be split.
	subject = strings.Join(strings.Fields(subject), " ")
	return rendered{Subject: subject, Body: strings.TrimLeft(body, "\n")}, nil
}

// itemData is what a fact's template sees.
type itemData struct {
	Notice
	Site string
}

// mailData is what mail.tmpl sees.
type mailData struct {
	Site, Name, To, OptOut string
	Items                  []rendered
}

// compose renders one mail to one recipient from their notices.
func (ts templates) compose(site, optOut string, items []Notice) (rendered, error) {
	d := mailData{Site: site, Name: items[0].Name, To: items[0].To, OptOut: optOut}
	if d.Name == "" {
		d.Name = d.To
	}
	for _, n := range items {
		r, err := ts.render(string(n.Fact), itemData{Notice: n, Site: site})
		if err != nil {
			return rendered{}, fmt.Errorf("%s.tmpl: %w", n.Fact, err)
		}
		r.Body = strings.TrimRight(r.Body, "\n")
		d.Items = append(d.Items, r)
	}
	r, err := ts.render("mail", d)
	if err != nil {
		return rendered{}, fmt.Errorf("mail.tmpl: %w", err)
	}
	return r, nil
}

// check renders every template with sample data: a field a template
// names that the data does not have is found when the configuration is
// checked, not when a mail is due.
func (ts templates) check() error {
	sample := Notice{Fact: AccountActive, Subject: "atlas", Period: "p", To: "alice", Mail: "alice@example.org", Name: "Alice",
		Collaborations: []string{"atlas"}, User: "bob", UserName: "Bob", Date: "2026-01-01", Days: 3, Start: "s", End: "e",
		Summary: "downtime", Services: []string{"slurm"}, Resource: "core-hours", Percent: 80, Used: 80, Allocated: 100}
	for name := range ts {
		if name == "mail" {
			continue
		}
		n := sample
		n.Fact = Fact(name)
		if _, err := ts.compose("Site", "notices", []Notice{n, n}); err != nil {
			return err
		}
	}
	return nil
}
