//go:build unix

package sqlite

import (
	"errors"
	"os"
	"syscall"
)

// lockFD takes an exclusive flock on f without waiting. A flock belongs
// to the open file, not the process: a second open in the same process
// conflicts too, and the kernel drops it when the last descriptor closes,
// including when the process is killed.
func lockFD(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errWouldBlock
		}
		return err
	}
}
