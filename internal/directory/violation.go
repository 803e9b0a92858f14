package directory

import (
	"fmt"
	"time"
)

// Violation kinds. Each names a rule (or a directory problem) and is what
// metrics count and per-rule actions are keyed by.
const (
	KindMalformedEntry      = "malformed_entry"          // an entry that cannot be mapped
	KindUnknownReference    = "unknown_reference"        // a member or contact that is not a known user
	KindDuplicateName       = "duplicate_name"           // rule 7: names unique
	KindDuplicateID         = "duplicate_id"             // rule 7: uid/gid numbers unique
	KindMultipleAdmin       = "multiple_administrative"  // rule 1
	KindUnvalidatedExternal = "unvalidated_external"     // rule 4
	KindMailDomain          = "mail_domain"              // rule 4: non-institutional e-mail
	KindNoCollabContact     = "no_collaboration_contact" // rule 5
	KindProductionName      = "production_name"          // rule 6: naming syntax
	KindProductionOwner     = "production_owner"         // rule 6: owner unknown
	KindReviewOverdue       = "review_overdue"           // rule 3
	KindReviewDueSoon       = "review_due_soon"          // rule 3, a warning
	// KindReserved: a name or number of the machine's own accounts, or a
	// number outside the configured ranges. Always excluded: no action can
	// be configured for it.
	KindReserved = "reserved"
)

// Actions: what happens to a subject that breaks a rule.
const (
	ActionExclude = "exclude" // left out downstream
	ActionHold    = "hold"    // kept in its last provisioned state
	ActionReport  = "report"  // listed only
	ActionOff     = "off"     // the rule is not checked
)

// DefaultActions are the actions of the rules a site may configure. The
// review rules have no action: an overdue review is what makes a
// collaboration expire.
var DefaultActions = map[string]string{
	KindDuplicateName:       ActionExclude,
	KindDuplicateID:         ActionExclude,
	KindMultipleAdmin:       ActionHold,
	KindUnvalidatedExternal: ActionExclude,
	KindMailDomain:          ActionExclude,
	KindNoCollabContact:     ActionReport,
	KindProductionName:      ActionExclude,
	KindProductionOwner:     ActionExclude,
}

// Severities.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Violation is a broken rule: never a crash and never a silent drop.
type Violation struct {
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Subject  string    `json:"subject"` // the DN
	Name     string    `json:"name"`    // uid or collaboration name, when known
	Reason   string    `json:"reason"`
	Action   string    `json:"action"`
	Since    time.Time `json:"since"` // first seen; zero until the store fills it in
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s: %s (%s)", v.Kind, v.Subject, v.Reason, v.Action)
}
