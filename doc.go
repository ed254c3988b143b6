// Package agentstream holds the domain of agentstream: threads, messages,
// runs and the events a run produces, and the interfaces (Store, EventLog,
// Model, Tool) that the implementation packages satisfy.
//
// The package does no I/O. The runner lives in agent/, the stores in sqlite/
// (and later postgres/), the event logs in memlog/, the model client in
// openai/, the simulated model in sim/ and the HTTP API in httpapi/.
package agentstream
