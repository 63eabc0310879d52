package report

import (
	"encoding/json"
	"io"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// PlanJSON writes the plan as indented JSON followed by a newline. The
// shape is plan.Plan's, documented in docs/plan-json.md; '<', '>' and '&'
// stay escaped so the output can be embedded in HTML as it is.
func PlanJSON(w io.Writer, p *plan.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
