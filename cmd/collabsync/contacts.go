package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/ldapx"
)

// cmdContacts prints a collaboration's contacts of one role, like the
// centre's laboinfo command.
func cmdContacts(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("contacts", "-g <collaboration> -p <"+roleNames("|")+"> [--format table|json]")
	group := fs.String("g", "", "collaboration name")
	role := fs.String("p", string(directory.RoleCollaboration), "contact role: "+roleNames(", "))
	format := fs.String("format", "table", "table or json")
	if !a.parseFlags(fs, args) || !checkFormat(a, "contacts", *format) {
		return exitUsage
	}
	if *group == "" {
		fmt.Fprintln(a.stderr, "collabsync contacts: -g <collaboration> is required")
		return exitUsage
	}
	if !slices.Contains(directory.Roles(), directory.Role(*role)) {
		fmt.Fprintf(a.stderr, "collabsync contacts: unknown role %q (want %s)\n", *role, roleNames(", "))
		return exitUsage
	}
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	contacts, err := ldapx.NewSource(cfg.LDAP, a.log).Contacts(ctx, *group)
	if errors.Is(err, ldapx.ErrNotFound) {
		fmt.Fprintf(a.stderr, "collabsync contacts: no collaboration %q\n", *group)
		return exitFailure
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	users := contacts[directory.Role(*role)]
	if *format == "json" {
		out := make([]contactJSON, 0, len(users))
		for _, u := range users {
			out = append(out, contactJSON{UID: u.UID, Name: u.Name, Mail: u.Mail})
		}
		err = writeJSON(a.stdout, out)
	} else if len(users) == 0 {
		_, err = fmt.Fprintf(a.stdout, "%s has no %s contact\n", *group, *role)
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UID\tNAME\tMAIL")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.UID, u.Name, u.Mail)
		}
		err = tw.Flush()
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	return exitOK
}

// contactJSON is one contact in `contacts --format json`.
type contactJSON struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
	Mail string `json:"mail"`
}

// roleNames lists the contact roles for usage messages.
func roleNames(sep string) string {
	var names []string
	for _, r := range directory.Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, sep)
}
