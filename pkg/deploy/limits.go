package deploy

import (
	"errors"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// sentTooMuch reports whether err is a node sending more than tether
// reads: an answer past its bound, an event line without end. Retrying
// would only read the same flood again, so the node fails at once.
func sentTooMuch(err error) bool {
	var le *remote.OutputLimitError
	return errors.As(err, &le) || errors.Is(err, agent.ErrEventTooLong)
}
