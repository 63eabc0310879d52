package testhost

import (
	"testing"
	"time"
)

// TestBucket drives the token bucket with a simulated clock: a sender that
// sleeps what reserve tells it must need exactly bytes/rate, whatever its
// chunk sizes, and an idle link allows one burst at once.
func TestBucket(t *testing.T) {
	tests := []struct {
		name   string
		rate   int64
		idle   time.Duration // before sending
		chunks []int
		want   time.Duration
	}{
		{"unlimited", 0, 0, []int{1 << 20}, 0},
		{"one chunk", 1000, 0, []int{3000}, 3 * time.Second},
		{"many small chunks", 1000, 0, []int{100, 100, 100, 700, 1000, 1000}, 3 * time.Second},
		{"big chunk is split", 10_000, 0, []int{50_000}, 5 * time.Second},
		{"idle link allows a burst", 1000, time.Minute, []int{512}, 0},
		{"burst then rate", 1000, time.Minute, []int{1512}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			b := &bucket{now: func() time.Time { return now }}
			b.set(tt.rate)
			now = now.Add(tt.idle)
			start := now
			for _, c := range tt.chunks {
				for c > 0 {
					n, d := b.reserve(c)
					if n <= 0 || n > c {
						t.Fatalf("reserve(%d) granted %d", c, n)
					}
					now = now.Add(d)
					c -= n
				}
			}
			if got := now.Sub(start); got != tt.want {
				t.Errorf("sending took %v, want %v", got, tt.want)
			}
		})
	}
}
