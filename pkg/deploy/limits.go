package deploy

import (
	"errors"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// sentTooMuch reports whether err is a node sending more than tether
// reads: an answer past its bound, an event line without end. Retrying
// would only read the same flood again, so the deployer stops following
// the node at once; how its deploy ends is then unknown (it rolls back by
// itself unless it was confirmed), and the node is reported uncertain.
func sentTooMuch(err error) bool {
	var le *remote.OutputLimitError
	return errors.As(err, &le) || errors.Is(err, agent.ErrEventTooLong)
}
