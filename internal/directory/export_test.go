package directory

// NewEvaluatorFlatteningPast is an Evaluator that makes its patched
// memberships flat again past n users (0: its default).
func NewEvaluatorFlatteningPast(n int) *Evaluator { return &Evaluator{patchLimit: n} }
