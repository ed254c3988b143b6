package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	// Embedded zone data, so current_time knows every IANA zone on any host.
	_ "time/tzdata"
)

// CurrentTime returns the current_time tool: the date and time now, in a
// given IANA time zone (UTC by default).
func CurrentTime(clock func() time.Time) *Func {
	return NewFunc("current_time",
		"Returns the current date and time. Use it whenever the answer depends on today's date or the time.",
		`{"type":"object","properties":{"timezone":{"type":"string","description":"IANA time zone, e.g. Europe/Paris. Default UTC.","examples":["UTC"]}},"additionalProperties":false}`,
		func(_ context.Context, args json.RawMessage) (string, error) {
			var in struct {
				Timezone string `json:"timezone"`
			}
			if err := decodeArgs(args, &in); err != nil {
				return "", err
			}
			loc := time.UTC
			if in.Timezone != "" {
				l, err := time.LoadLocation(in.Timezone)
				if err != nil {
					return "", fmt.Errorf("unknown time zone %q", in.Timezone)
				}
				loc = l
			}
			now := clock().In(loc)
			out, _ := json.Marshal(map[string]string{
				"time":     now.Format(time.RFC3339),
				"weekday":  now.Weekday().String(),
				"timezone": loc.String(),
			})
			return string(out), nil
		})
}

// Pregnancy arithmetic by Naegele's rule: the due date is 280 days after the
// first day of the last menstrual period, and gestational age counts from it.
const (
	pregnancyDays    = 280
	maxGestationDays = 44 * 7
)

// DueDate returns the due_date tool: from the first day of the last
// menstrual period, the estimated due date and the current week.
func DueDate(clock func() time.Time) *Func {
	return NewFunc("due_date",
		"Computes the estimated due date and the current week of pregnancy from the first day of the last menstrual period.",
		`{"type":"object","properties":{"last_period":{"type":"string","format":"date","description":"First day of the last menstrual period, YYYY-MM-DD.","examples":["2026-06-01"]}},"required":["last_period"],"additionalProperties":false}`,
		func(_ context.Context, args json.RawMessage) (string, error) {
			var in struct {
				LastPeriod string `json:"last_period"`
			}
			if err := decodeArgs(args, &in); err != nil {
				return "", err
			}
			if in.LastPeriod == "" {
				return "", fmt.Errorf("last_period is required (YYYY-MM-DD)")
			}
			lmp, err := time.Parse(time.DateOnly, in.LastPeriod)
			if err != nil {
				return "", fmt.Errorf("last_period %q is not a date of the form YYYY-MM-DD", in.LastPeriod)
			}
			today := clock().UTC().Truncate(24 * time.Hour)
			days := int(today.Sub(lmp).Hours() / 24)
			switch {
			case days < 0:
				return "", fmt.Errorf("last_period %s is in the future", in.LastPeriod)
			case days > maxGestationDays:
				return "", fmt.Errorf("last_period %s is more than 44 weeks ago", in.LastPeriod)
			}
			due := lmp.AddDate(0, 0, pregnancyDays)
			out, _ := json.Marshal(map[string]any{
				"due_date":        due.Format(time.DateOnly),
				"current_week":    days/7 + 1,
				"gestational_age": fmt.Sprintf("%d weeks %d days", days/7, days%7),
				"days_until_due":  pregnancyDays - days,
				"trimester":       trimester(days / 7),
			})
			return string(out), nil
		})
}

// trimester of a gestational age in completed weeks.
func trimester(weeks int) int {
	switch {
	case weeks < 13:
		return 1
	case weeks < 27:
		return 2
	}
	return 3
}
