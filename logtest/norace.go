//go:build !race

package logtest

const underRace = false
