package server

import (
	"log/slog"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/tools"
)

// toolsOf returns the tools agents may name: the built-in ones, then the
// HTTP tools the config declares (validated: their names are distinct),
// which log their failed calls to logger.
func toolsOf(cfg config.Config, logger *slog.Logger) (tools.Registry, error) {
	reg := tools.Builtins(time.Now)
	for _, t := range cfg.Tools {
		h, err := t.NewHTTP(logger)
		if err != nil {
			return nil, err
		}
		if err := reg.Add(h); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
