// One AG-UI run against agentsite with the official client (@ag-ui/client's
// HttpAgent, which checks every event with verifyEvents as it reads the stream).
//
//   node tests/agui/run_agent.mjs '{"url": "http://127.0.0.1:8000/api/rooms/triage/agui",
//     "threadId": "triage", "token": "<API token>", "text": "find login issues"}'
//
// Optional keys: "runId", "resume" (ResumeEntry list), "forwardedProps".
// Prints one JSON object: {"events": [...], "outcome", "newMessages", "pending"}
// or {"error": "..."}; the exit code is 1 when the client refused the stream.
import { HttpAgent } from "@ag-ui/client";

const options = JSON.parse(process.argv[2]);
const agent = new HttpAgent({
  url: options.url,
  threadId: options.threadId,
  headers: { Authorization: `Token ${options.token}` },
  initialMessages: options.text
    ? [{ id: `user-${Date.now()}`, role: "user", content: options.text }]
    : [],
});

const events = [];
let outcome = null;
try {
  const { newMessages } = await agent.runAgent(
    {
      runId: options.runId,
      resume: options.resume,
      forwardedProps: options.forwardedProps,
    },
    {
      onEvent: ({ event }) => {
        events.push(event);
      },
      onRunFinishedEvent: ({ event }) => {
        outcome = event.outcome ?? null;
      },
    },
  );
  console.log(
    JSON.stringify({
      events,
      outcome,
      newMessages,
      pending: agent.pendingInterrupts,
    }),
  );
} catch (error) {
  console.log(JSON.stringify({ events, error: String(error?.message ?? error) }));
  process.exitCode = 1;
}
