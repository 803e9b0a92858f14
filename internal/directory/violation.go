package directory

import (
	"fmt"
	"time"
)

// ViolationKind names a rule (or a directory problem): what metrics count
// and per-rule actions are keyed by.
type ViolationKind string

// The violation kinds.
const (
	KindMalformedEntry      ViolationKind = "malformed_entry"          // an entry that cannot be mapped
	KindUnknownReference    ViolationKind = "unknown_reference"        // a member or contact that is not a known user
	KindDuplicateName       ViolationKind = "duplicate_name"           // rule 7: names unique
	KindDuplicateID         ViolationKind = "duplicate_id"             // rule 7: uid/gid numbers unique
	KindMultipleAdmin       ViolationKind = "multiple_administrative"  // rule 1
	KindUnvalidatedExternal ViolationKind = "unvalidated_external"     // rule 4
	KindMailDomain          ViolationKind = "mail_domain"              // rule 4: non-institutional e-mail
	KindNoCollabContact     ViolationKind = "no_collaboration_contact" // rule 5
	KindProductionName      ViolationKind = "production_name"          // rule 6: naming syntax
	KindProductionOwner     ViolationKind = "production_owner"         // rule 6: owner unknown
	KindReviewOverdue       ViolationKind = "review_overdue"           // rule 3
	KindReviewDueSoon       ViolationKind = "review_due_soon"          // rule 3, a warning
	// KindPrimaryGroup, a warning: an active user's primary gid names no
	// provisioned group (getent shows a number without a name), or its
	// private group clashes with a collaboration's.
	KindPrimaryGroup ViolationKind = "primary_group"
	// KindReserved: a name or number of the machine's own accounts, or a
	// number outside the configured ranges. Always excluded: no action can
	// be configured for it.
	KindReserved ViolationKind = "reserved"
)

// Action is what happens to a subject that breaks a rule.
type Action string

// The actions a site may configure per rule.
const (
	ActionExclude Action = "exclude" // left out downstream
	ActionHold    Action = "hold"    // kept in its last provisioned state
	ActionReport  Action = "report"  // listed only
	ActionOff     Action = "off"     // the rule is not checked
)

// What violations without a configurable action say happened.
const (
	ActionExpired Action = "expired" // an overdue review: the collaboration expired
	ActionWarn    Action = "warn"    // a warning only
	ActionSkipped Action = "skipped" // a dangling reference: the value was left out
)

// Actions lists the actions a site may configure.
func Actions() []Action { return []Action{ActionExclude, ActionHold, ActionReport, ActionOff} }

// DefaultAction is the action of a rule a site may configure; ok is false
// for the kinds it may not (the review rules: an overdue review is what
// makes a collaboration expire; reserved accounts: always left out).
func DefaultAction(kind ViolationKind) (a Action, ok bool) {
	switch kind {
	case KindDuplicateName, KindDuplicateID, KindUnvalidatedExternal, KindMailDomain, KindProductionName, KindProductionOwner:
		return ActionExclude, true
	case KindMultipleAdmin:
		return ActionHold, true
	case KindNoCollabContact:
		return ActionReport, true
	}
	return "", false
}

// Severity says whether a violation is an error or a warning.
type Severity string

// The severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Violation is a broken rule: never a crash and never a silent drop.
type Violation struct {
	Kind     ViolationKind `json:"kind"`
	Severity Severity      `json:"severity"`
	Subject  string        `json:"subject"` // the DN
	Name     string        `json:"name"`    // uid or collaboration name, when known
	Reason   string        `json:"reason"`
	Action   Action        `json:"action"`
	Since    time.Time     `json:"since"` // first seen; zero until the store fills it in
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s: %s (%s)", v.Kind, v.Subject, v.Reason, v.Action)
}
