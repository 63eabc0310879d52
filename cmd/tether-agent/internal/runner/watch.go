package runner

// fileWatch wakes a wait loop when one of a few files in a directory may
// have changed, so the loop need not sleep out its poll interval first: a
// confirmation that lands just after a poll used to wait up to
// PollInterval for the next one, and every hand-over of a deploy (event
// written, follower reads it, confirmation written, runner claims it) paid
// that again.
//
// A wake says only "look again": the loops check their files' state, never
// the notification, so a spurious wake costs a stat and a lost one (a queue
// overflow, a file system that reports nothing) only delays the loop to its
// next poll. The loops keep polling at PollInterval, watched or not.
type fileWatch struct {
	c    chan struct{} // nil when nothing watches: never ready
	stop func()
}

// changed is ready after a change to a watched file; several changes
// before the loop looks again make one wake.
func (w *fileWatch) changed() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.c
}

// close ends the watch; changed is never ready again.
func (w *fileWatch) close() {
	if w != nil && w.stop != nil {
		w.stop()
	}
}

// wake records a change without blocking: one pending wake is enough.
func (w *fileWatch) wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// watchFiles watches names in dir (every file in it when names is empty)
// with r.watch. Where no watch can be had (not Linux, the user's inotify
// instances used up) it returns an inert one, and the caller's poll paces
// it as before.
//
// Call it before the loop's first look at the files: a change between the
// look and the watch would otherwise be seen only at the next poll.
func (r *Runner) watchFiles(dir string, names ...string) *fileWatch {
	w, err := r.watch(dir, names...)
	if err != nil {
		return nil
	}
	return w
}
