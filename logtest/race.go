//go:build race

package logtest

// underRace: the race detector slows the code 5 to 10 times, and a loaded
// machine then starves a test for seconds at a time.
const underRace = true
