package testenv

import "testing"

// Find is the first of items that match accepts. With none, it stops the
// test with the message format and args make ("no plan for rpi"): a test
// that looks up one node's result or plan cannot go on without it, and a
// zero value would fail later with a message that hides why.
func Find[T any](t testing.TB, items []T, match func(T) bool, format string, args ...any) T {
	t.Helper()
	for _, it := range items {
		if match(it) {
			return it
		}
	}
	t.Fatalf(format, args...)
	var zero T
	return zero
}
