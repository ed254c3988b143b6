package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// openAINodeDir holds the Node client of TestOpenAINode and its locked
// dependencies.
var openAINodeDir = filepath.Join("testdata", "openai")

// TestOpenAINode: the official openai npm package, run by Node against the
// real server: a streamed completion with usage from an agent that calls a
// tool, a whole one bound to a thread, the model list, and errors raised
// as the library's NotFoundError, BadRequestError and AuthenticationError.
func TestOpenAINode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	missing := func(what string) {
		testenv.Missing(t, what, "install Node.js 20 or newer and npm, then run `npm ci --prefix server/testdata/openai`; bash .ci/run does both")
	}
	if err != nil {
		missing("node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(openAINodeDir, "node_modules", "openai", "package.json")); err != nil {
		missing(openAINodeDir + "/node_modules has no openai package")
	}
	e := start(t, sim.Options{}, func(c *config.Config) { c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}} })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(openAINodeDir, "script.mjs"), e.url+"/v1", testKey)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	type usage struct {
		Prompt     int `json:"prompt_tokens"`
		Completion int `json:"completion_tokens"`
		Total      int `json:"total_tokens"`
	}
	type apiError struct {
		Class                      string
		NotFound, BadRequest, Auth bool
		Status                     int
		Type, Message              string
	}
	var got struct {
		Stream struct {
			Roles   []string
			Content string
			Finish  string
			Usage   *usage
			IDs     []string `json:"ids"`
		}
		Whole struct {
			Content, Finish, Thread string
			Usage                   usage
		}
		Models []string
		Errors map[string]apiError
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || runErr != nil {
		t.Fatalf("the openai client: %v; decoding its answer: %v\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	s := got.Stream
	if strings.Join(s.Roles, ",") != "assistant" || s.Content == "" || s.Finish != "stop" || s.Usage == nil || s.Usage.Total == 0 || len(s.IDs) != 1 {
		t.Fatalf("stream %+v", s)
	}
	if w := got.Whole; w.Content == "" || w.Finish != "stop" || w.Usage.Total != w.Usage.Prompt+w.Usage.Completion || w.Usage.Total == 0 || w.Thread != "node-conv" {
		t.Fatalf("whole %+v", w)
	}
	if !strings.Contains(","+strings.Join(got.Models, ",")+",", ",tester,") {
		t.Fatalf("models %v", got.Models)
	}
	want := map[string]apiError{
		"unknown_model": {Class: "NotFoundError", NotFound: true, Status: 404, Type: "invalid_request_error"},
		"client_tools":  {Class: "BadRequestError", BadRequest: true, Status: 400, Type: "invalid_request_error"},
		"bad_key":       {Class: "AuthenticationError", Auth: true, Status: 401, Type: "authentication_error"},
	}
	for name, w := range want {
		g := got.Errors[name]
		if g.Message == "" {
			t.Errorf("%s: no message in %+v", name, g)
		}
		g.Message = ""
		if g != w {
			t.Errorf("%s: %+v, want %+v", name, g, w)
		}
	}
	// The streamed run's tool ran on the server: its thread has the
	// tool's message; the earlier messages came before the input.
	var threads struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	resp := e.request("GET", "/v1/threads", "", map[string]string{"Authorization": "Bearer " + testKey})
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&threads); err != nil || len(threads.Data) != 2 {
		t.Fatalf("threads %+v: %v", threads, err)
	}
}
