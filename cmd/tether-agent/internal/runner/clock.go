package runner

import "time"

// Clock is the agent's time: timestamps, deadlines and poll intervals all go
// through it so the state machine's timeouts can be driven by a test.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
