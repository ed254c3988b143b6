//go:build unix

package sqlite_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/sqlite"
)

func openExclusive(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenWith(t.Context(), path, sqlite.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("exclusive open: %v", err)
	}
	return s
}

// inUse expects an exclusive open of path to fail with an *InUseError
// naming path, and returns it.
func inUse(t testing.TB, path string) *sqlite.InUseError {
	t.Helper()
	s, err := sqlite.OpenWith(t.Context(), path, sqlite.Options{Exclusive: true})
	if err == nil {
		_ = s.Close()
		t.Fatal("a second exclusive open of a held file succeeded")
	}
	var e *sqlite.InUseError
	if !errors.As(err, &e) {
		t.Fatalf("a second exclusive open: %v; want an *InUseError", err)
	}
	if e.Path != path || !strings.Contains(err.Error(), path) || e.Lock != path+".lock" {
		t.Fatalf("InUseError %+v (%q) does not name %s and its lock file", e, err, path)
	}
	return e
}

// TestExclusive: while an exclusive store holds a file, another exclusive
// open fails naming the file and this process; a plain open still reads
// and writes it; once the store is closed, an exclusive open works again.
func TestExclusive(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentstream.db")
	owner := openExclusive(t, path)

	e := inUse(t, path)
	if e.Owner == nil || e.Owner.PID != os.Getpid() || e.Owner.Started.IsZero() || e.Owner.Host == "" {
		t.Fatalf("the owner recorded: %+v, want this process", e.Owner)
	}
	if msg := e.Error(); !strings.Contains(msg, "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("the error does not name the owner's PID: %s", msg)
	}
	t.Log(e)

	// Another tool's plain open is not refused and shares the data.
	plain := openAt(t, path)
	th := agentstream.Thread{ID: "thr_1", UserID: "u", Agent: "a", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := plain.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("a plain open of a held file: %v", err)
	}
	closeStore(t, plain)
	if _, err := owner.GetThread(t.Context(), "u", "thr_1"); err != nil {
		t.Fatalf("the owner does not see the plain open's write: %v", err)
	}
	inUse(t, path) // closing a plain open leaves the owner's lock

	closeStore(t, owner)
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file after Close: %v, want it removed", err)
	}
	again := openExclusive(t, path)
	if _, err := again.GetThread(t.Context(), "u", "thr_1"); err != nil {
		t.Fatalf("the next owner: %v", err)
	}
	closeStore(t, again)
}

// TestExclusiveSymlink: a second name of the file (a symbolic link) finds
// the same lock.
func TestExclusiveSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "agentstream.db")
	owner := openExclusive(t, path)
	defer closeStore(t, owner)
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.OpenWith(t.Context(), link, sqlite.Options{Exclusive: true})
	var e *sqlite.InUseError
	if !errors.As(err, &e) || e.Lock != path+".lock" {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("an exclusive open through a link: %v; want an *InUseError on %s.lock", err, path)
	}
}

// TestExclusiveStaleLockFile: a lock file that no process holds (its
// owner was killed) does not stop the next owner, who records itself.
func TestExclusiveStaleLockFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentstream.db")
	stale := `{"pid":999999,"host":"gone","started":"2020-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(path+".lock", []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openExclusive(t, path)
	defer closeStore(t, s)
	var o sqlite.Owner
	b, err := os.ReadFile(path + ".lock")
	if err != nil || json.Unmarshal(b, &o) != nil || o.PID != os.Getpid() {
		t.Fatalf("the lock file after taking over: %q, %v; want this process", b, err)
	}
}

// TestExclusiveUnnamedOwner: a held lock whose file names nobody (its
// holder has not written it yet, or is not agentstream) still refuses,
// and says the owner is unknown.
func TestExclusiveUnnamedOwner(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentstream.db")
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	e := inUse(t, path)
	if e.Owner != nil || !strings.Contains(e.Error(), "does not name") {
		t.Fatalf("an unnamed holder: %+v (%v)", e.Owner, e)
	}
}

// TestExclusiveFailures: a lock file that cannot be opened fails the
// open, naming it; an open that fails after taking the lock releases it.
func TestExclusiveFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	if err := os.Mkdir(path+".lock", 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.OpenWith(t.Context(), path, sqlite.Options{Exclusive: true})
	if err == nil || !strings.Contains(err.Error(), path+".lock") {
		t.Fatalf("a lock file that is a directory: %v; want an error naming it", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the database was created without its lock: %v", err)
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second would be InUseError if the first kept the lock
		_, err := sqlite.OpenWith(t.Context(), junk, sqlite.Options{Exclusive: true})
		var e *sqlite.InUseError
		if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), junk) {
			t.Fatalf("an exclusive open of a junk file: %v; want its own error", err)
		}
	}
	if _, err := os.Stat(junk + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file of a failed open: %v, want it removed", err)
	}
}

// TestExclusiveMemory: ":memory:" has nothing to share: exclusive opens
// of it all work.
func TestExclusiveMemory(t *testing.T) {
	t.Parallel()
	a := openExclusive(t, ":memory:")
	defer closeStore(t, a)
	b := openExclusive(t, ":memory:")
	defer closeStore(t, b)
}

// holderEnv makes the test binary a process that holds a file: see
// TestExclusiveOtherProcess.
const holderEnv = "AGENTSTREAM_SQLITE_TEST_HOLD"

// TestExclusiveOtherProcess: a file another process holds is refused with
// that process's PID; once that process is killed (SIGKILL: no Close),
// the kernel has released the lock and the file can be owned again.
func TestExclusiveOtherProcess(t *testing.T) {
	if p := os.Getenv(holderEnv); p != "" {
		hold(p)
		return
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentstream.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestExclusiveOtherProcess$")
	cmd.Env = append(os.Environ(), holderEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); l == "holding" || strings.HasPrefix(l, "error:") {
				ready <- l
				break
			}
		}
		close(ready)
	}()
	select {
	case line := <-ready:
		if line != "holding" {
			t.Fatalf("the holder said %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the holder did not take the lock within 30s")
	}

	if e := inUse(t, path); e.Owner == nil || e.Owner.PID != cmd.Process.Pid {
		t.Fatalf("the owner recorded: %+v, want pid %d", e.Owner, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error says so
	if _, err := os.Stat(path + ".lock"); err != nil {
		t.Fatalf("a killed owner's lock file: %v; want it left behind", err)
	}
	s := openExclusive(t, path)
	closeStore(t, s)
}

// hold owns the file at path and waits to be killed.
func hold(path string) {
	s, err := sqlite.OpenWith(context.Background(), path, sqlite.Options{Exclusive: true})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer func() { _ = s.Close() }()
	fmt.Println("holding")
	time.Sleep(5 * time.Minute) // bounded in case the test dies without killing it
}
