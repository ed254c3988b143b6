package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Options tune OpenWith.
type Options struct {
	// Exclusive makes the Store the database file's one owner for its
	// life: it holds an advisory lock on a file beside the database
	// (PATH.lock, recording the owner's PID, host and start time), and
	// another Exclusive open of the same file, in any process, fails
	// with an *InUseError until this Store is closed or its process ends
	// (the kernel releases a killed process's lock, so a crash leaves
	// nothing to clean up). Opens without Exclusive ignore the lock, so
	// other tools can still use a file a server owns. Ignored for
	// ":memory:". Default false.
	Exclusive bool
}

// Owner is the process holding a database file's lock, as its lock file
// records it.
type Owner struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// InUseError is OpenWith's error, with Exclusive, when another Store
// holds the database file.
type InUseError struct {
	Path string // the database file, as given to OpenWith
	Lock string // its lock file
	// Owner is the holder as its lock file names it; nil when the lock
	// file names none (the holder writes it just after locking).
	Owner *Owner
}

func (e *InUseError) Error() string {
	who := "another process (its lock file does not name it)"
	if o := e.Owner; o != nil {
		who = fmt.Sprintf("process %d on host %s, since %s", o.PID, o.Host, o.Started.Local().Format(time.RFC3339))
	}
	return fmt.Sprintf("database file %s is in use by %s, which holds its lock %s", e.Path, who, e.Lock)
}

// errWouldBlock is what the platform's lock call returns when another
// open file holds the lock.
var errWouldBlock = errors.New("lock held elsewhere")

// fileLock is a held lock on a database file's lock file.
type fileLock struct {
	f    *os.File
	path string
}

// lockPath is the lock file of the database file at path: beside it,
// beside the file a symbolic link points to, so that each name of one
// database finds the same lock.
func lockPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path + ".lock"
}

// acquireLock takes the lock of the database file at path without
// waiting, and records this process in the lock file.
func acquireLock(path string) (*fileLock, error) {
	lp := lockPath(path)
	// A lock file removed or replaced between our open and our lock is
	// locked by nobody else's open: try again on the one now there.
	for range 10 {
		f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock file: %w", err)
		}
		if err := lockFD(f); err != nil {
			_ = f.Close() // the lock error is the one to report
			if errors.Is(err, errWouldBlock) {
				return nil, &InUseError{Path: path, Lock: lp, Owner: readOwner(lp)}
			}
			return nil, fmt.Errorf("lock %s: %w", lp, err)
		}
		if !sameFile(f, lp) {
			_ = f.Close() // releases the lock on the stale file
			continue
		}
		l := &fileLock{f: f, path: lp}
		if err := l.writeOwner(); err != nil {
			_ = f.Close() // the write error is the one to report
			return nil, fmt.Errorf("lock file %s: %w", lp, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("lock file %s keeps being replaced", lp)
}

// sameFile reports whether f is the file at path now.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// writeOwner records this process in the lock file. The record is
// written over the old one, then the file cut to it, so a reader sees
// the old record, the new one, or (rarely) a mix it cannot parse and
// reads again; never an empty file left by truncating first.
func (l *fileLock) writeOwner() error {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	b, err := json.Marshal(Owner{PID: os.Getpid(), Host: host, Started: time.Now().Truncate(time.Second)})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return err
	}
	return l.f.Truncate(int64(len(b)))
}

// readOwner reads the owner a lock file records. A holder writes it just
// after taking the lock, so an empty or unparsable record is read again
// for a moment; nil if it stays so.
func readOwner(path string) *Owner {
	for i := 0; ; i++ {
		b, err := os.ReadFile(path)
		var o Owner
		if err == nil && json.Unmarshal(b, &o) == nil && o.PID > 0 {
			return &o
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) || i == 20 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// release removes the lock file, while it is still this lock's, and
// closes it, which releases the lock. Removing first means that a next
// owner never locks a file that is about to disappear; one that opened it
// before the removal finds it gone (sameFile) and opens the new one. The
// removal is a courtesy: a lock file left behind stops nobody, as after
// a crash (and Windows cannot remove a file still open).
func (l *fileLock) release() error {
	if sameFile(l.f, l.path) {
		_ = os.Remove(l.path)
	}
	return l.f.Close()
}
