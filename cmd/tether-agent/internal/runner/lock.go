package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

const (
	lockFile     = "lock"
	lockInfoFile = "lock.json"
)

// machineLock is the per-machine deploy lock: flock(2) on S/lock, held by the
// runner for the whole deploy. The kernel drops it when the runner dies, so
// a crash never leaves a machine locked; lock.json only names the holder.
type machineLock struct {
	f        *os.File
	infoPath string
}

// acquireLock takes the lock and names info as its holder, or returns an
// *agent.LockHeldError naming the holder. It retries for a while before
// giving up, because `status` and `follow` probe the lock with a brief
// shared flock of their own.
func acquireLock(ctx context.Context, stateDir string, info agent.LockInfo, clock Clock, retry time.Duration) (*machineLock, error) {
	l, _, err := lockMachine(ctx, stateDir, clock, retry)
	if err != nil {
		return nil, err
	}
	if err := l.setHolder(info); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

// lockMachine takes the lock without naming a holder yet, and returns the
// holder that lock.json still names, if any: a deploy whose runner died
// (killed, or the machine lost power) without finishing. The caller ends
// that deploy (reconcile) before it names itself, so the record of the
// unfinished deploy is never lost, not even by a crash in between.
func lockMachine(ctx context.Context, stateDir string, clock Clock, retry time.Duration) (*machineLock, *agent.LockInfo, error) {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open lock: %w", err)
	}
	const step = 25 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if waited >= retry {
			f.Close()
			holder, _ := readLockInfo(stateDir)
			if holder == nil {
				holder = &agent.LockInfo{DeployID: "unknown"}
			}
			return nil, nil, &agent.LockHeldError{Holder: *holder}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, nil, ctx.Err()
		case <-clock.After(step):
		}
	}
	l := &machineLock{f: f, infoPath: filepath.Join(stateDir, lockInfoFile)}
	stale, err := readLockInfo(stateDir)
	if err != nil {
		stale = nil
	}
	return l, stale, nil
}

// setHolder writes lock.json.
func (l *machineLock) setHolder(info agent.LockInfo) error {
	if err := writeJSONAtomic(l.infoPath, info); err != nil {
		return fmt.Errorf("write %s: %w", lockInfoFile, err)
	}
	return nil
}

// leave drops the lock and keeps lock.json: the deploy is not over (the
// machine is rebooting into its new system), and the runner that next
// takes the lock must find it.
func (l *machineLock) leave() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}

// release removes lock.json, then drops the lock. The lock file itself
// stays: removing it would let two processes lock two different inodes.
func (l *machineLock) release() {
	_ = os.Remove(l.infoPath)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}

func readLockInfo(stateDir string) (*agent.LockInfo, error) {
	b, err := readFileLimit(filepath.Join(stateDir, lockInfoFile), 64<<10)
	if err != nil {
		return nil, err
	}
	var info agent.LockInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// probeLock reports who holds the lock, or nil when nobody does.
func probeLock(stateDir string) (*agent.LockInfo, error) {
	f, err := os.Open(filepath.Join(stateDir, lockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return nil, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, err
	}
	info, err := readLockInfo(stateDir)
	if err != nil {
		// Held, but lock.json not written yet (or unreadable).
		return &agent.LockInfo{DeployID: "unknown"}, nil
	}
	return info, nil
}
