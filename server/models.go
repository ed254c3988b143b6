package server

import (
	"fmt"
	"log/slog"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/openai"
)

// modelEndpoints makes one model client per endpoint of cfg.Models (cfg
// defaulted), for the agents that name one (Agent.Endpoint), and logs
// each with the agents on it: its URL without credentials, never its key.
func modelEndpoints(cfg config.Config, logger *slog.Logger) (map[string]agentstream.Model, error) {
	if len(cfg.Models) == 0 {
		return nil, nil
	}
	models := make(map[string]agentstream.Model, len(cfg.Models))
	for _, e := range cfg.Models {
		m, err := openai.New(openai.Config{
			APIKey: e.APIKey, BaseURL: e.BaseURL,
			MaxRetries: *e.MaxRetries, DisableRetries: *e.MaxRetries == 0,
			IdleTimeout: e.IdleTimeout, H2C: e.H2C,
		})
		if err != nil {
			return nil, fmt.Errorf("model endpoint %q: %w", e.Name, err)
		}
		models[e.Name] = m
		var agents []string
		for _, a := range cfg.Agents {
			if a.Endpoint == e.Name {
				agents = append(agents, a.Name+" ("+a.Model+")")
			}
		}
		logger.Info("model endpoint", "name", e.Name, "url", config.ShowURL(e.BaseURL), "agents", agents)
	}
	return models, nil
}
