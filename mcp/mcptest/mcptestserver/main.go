// Command mcptestserver is mcptest's MCP server over stdio, for tests
// that run an MCP server as a child process. It appends what it sees to
// the file $MCPTEST_EVENTS, one event a line, starting with
// "start pid=N".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentstream/agentstream/mcp/mcptest"
)

func main() {
	// No flags: an unknown one fails the start, for tests of that.
	flag.Parse()
	var mu sync.Mutex
	var f *os.File
	if path := os.Getenv(mcptest.EventsVar); path != "" {
		var err error
		if f, err = os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
			log.Fatal(err)
		}
	}
	rec := func(event string) {
		if f == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = fmt.Fprintln(f, event)
	}
	rec(fmt.Sprintf("start pid=%d", os.Getpid()))
	// What the client sees on a failed start.
	fmt.Fprintln(os.Stderr, "mcptestserver: serving on stdio")
	if v := os.Getenv(mcptest.StderrVar); v != "" {
		fmt.Fprintln(os.Stderr, v)
	}
	if err := mcptest.NewServer(rec).Run(context.Background(), &sdk.StdioTransport{}); err != nil {
		rec("exit " + err.Error())
		log.Fatal(err)
	}
	rec("exit")
}
