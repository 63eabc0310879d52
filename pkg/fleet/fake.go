package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// FakeEvaluator answers EvalJSON from canned results keyed by installable
// ("<flake>#deploy", "<flake>#nixosConfigurations"). It panics on an
// installable it was not given, so a test notices an evaluation it did
// not plan for.
type FakeEvaluator struct {
	// Results holds the JSON the apply function would have produced.
	Results map[string]string
	// Errors holds the error to return instead, e.g. one saying the flake
	// "does not provide attribute".
	Errors map[string]error

	mu    sync.Mutex
	calls []FakeCall
}

// FakeCall is one evaluation the fake answered.
type FakeCall struct {
	Installable string
	Apply       string
}

// EvalJSON implements Evaluator.
func (e *FakeEvaluator) EvalJSON(ctx context.Context, installable, apply string, out any) error {
	e.mu.Lock()
	e.calls = append(e.calls, FakeCall{Installable: installable, Apply: apply})
	e.mu.Unlock()
	if err, ok := e.Errors[installable]; ok {
		return err
	}
	res, ok := e.Results[installable]
	if !ok {
		panic(fmt.Sprintf("FakeEvaluator: unexpected evaluation of %q", installable))
	}
	return json.Unmarshal([]byte(res), out)
}

// Calls returns the evaluations made so far, in order.
func (e *FakeEvaluator) Calls() []FakeCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]FakeCall(nil), e.calls...)
}
