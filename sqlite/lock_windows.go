//go:build windows

package sqlite

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockFD locks one byte of f, far past the owner record, without
// waiting: Windows byte-range locks bar other handles from reading what
// they cover, and the record must stay readable. Windows drops the locks
// of a handle when it closes and of a process when it ends.
func lockFD(f *os.File) error {
	ol := windows.Overlapped{OffsetHigh: 1} // byte 4 GiB
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errWouldBlock
	}
	return err
}
