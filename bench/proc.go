package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Process figures come from Linux's /proc; elsewhere they are left out.

// procPath is /proc/PID/name, or /proc/self/name for pid 0.
func procPath(pid int, name string) string {
	if pid == 0 {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// cpuUse is a process's CPU time so far, in user and system mode.
type cpuUse struct{ user, system time.Duration }

func (c cpuUse) total() time.Duration { return c.user + c.system }

func (c cpuUse) sub(d cpuUse) cpuUse { return cpuUse{c.user - d.user, c.system - d.system} }

// readCPU returns the CPU time the process has used: fields 14 (utime)
// and 15 (stime) of /proc/PID/stat, in clock ticks.
func readCPU(pid int) (cpuUse, error) {
	data, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return cpuUse{}, err
	}
	return parseStatCPU(data, clockTicks())
}

// parseStatCPU parses utime and stime out of /proc/PID/stat. The command
// name, field 2, is in parentheses and may hold spaces and parentheses,
// so fields are counted from the last ')'.
func parseStatCPU(data []byte, ticksPerSecond int64) (cpuUse, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return cpuUse{}, errors.New("bench: malformed /proc stat")
	}
	// After ')': field 3 (state) is rest[0], utime (14) rest[11], stime (15) rest[12].
	rest := strings.Fields(string(data[i+1:]))
	if len(rest) < 13 {
		return cpuUse{}, errors.New("bench: short /proc stat")
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return cpuUse{}, fmt.Errorf("bench: /proc stat: %w", err)
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / time.Duration(ticksPerSecond) }
	return cpuUse{user: tick(utime), system: tick(stime)}, nil
}

// readRSS returns the process's resident set size: VmRSS of
// /proc/PID/status.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(data)
}

func parseStatusRSS(data []byte) (int64, error) {
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, errors.New("bench: no VmRSS in /proc status")
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// AT_CLKTCK of the auxiliary vector, else 100.
var clockTicks = sync.OnceValue(func() int64 {
	data, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		if hz := auxClockTicks(data); hz > 0 {
			return hz
		}
	}
	return 100
})

// auxClockTicks finds AT_CLKTCK (17) in an auxiliary vector of native
// words; 0 when absent.
func auxClockTicks(auxv []byte) int64 {
	const atClkTck = 17
	word := strconv.IntSize / 8
	for i := 0; i+2*word <= len(auxv); i += 2 * word {
		var key, val uint64
		if word == 8 {
			key, val = binary.NativeEndian.Uint64(auxv[i:]), binary.NativeEndian.Uint64(auxv[i+word:])
		} else {
			key, val = uint64(binary.NativeEndian.Uint32(auxv[i:])), uint64(binary.NativeEndian.Uint32(auxv[i+word:]))
		}
		if key == 0 {
			break
		}
		if key == atClkTck && val > 0 && val < 1<<20 {
			return int64(val)
		}
	}
	return 0
}

// cpuTimes are the machine's CPU times from the "cpu" line of /proc/stat,
// in clock ticks: all of them, and the idle ones (idle and iowait).
type cpuTimes struct{ total, idle int64 }

func readMachineCPU() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseMachineCPU(data)
}

func parseMachineCPU(data []byte) (cpuTimes, error) {
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte("cpu "))
		if !ok {
			continue
		}
		var t cpuTimes
		for i, f := range strings.Fields(string(rest)) {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("bench: /proc/stat: %w", err)
			}
			if i >= 8 { // guest times are already in user and nice
				break
			}
			t.total += v
			if i == 3 || i == 4 { // idle, iowait
				t.idle += v
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("bench: no cpu line in /proc/stat")
}

// busyPercent is the share of the machine's CPU time that was busy
// between a and b (100: every core busy).
func busyPercent(a, b cpuTimes) float64 {
	total := b.total - a.total
	if total <= 0 {
		return 0
	}
	return 100 * float64(total-(b.idle-a.idle)) / float64(total)
}
