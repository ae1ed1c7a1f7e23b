// Ask a room's agent through AG-UI and approve what it proposes (docs/agui.md).
//
//   AGENTSITE_URL=http://127.0.0.1:8000 AGENTSITE_ROOM=demo AGENTSITE_TOKEN=<token> \
//     node examples/agui_approve.mjs "delete ENG-3"
//
// Needs @ag-ui/client (npm install @ag-ui/client). Prints each event's type, each
// interrupt's question, and the final outcome.
import { HttpAgent } from "@ag-ui/client";

const room = process.env.AGENTSITE_ROOM;
const agent = new HttpAgent({
  url: `${process.env.AGENTSITE_URL}/api/rooms/${room}/agui`,
  threadId: room, // the room's slug
  headers: { Authorization: `Token ${process.env.AGENTSITE_TOKEN}` },
  initialMessages: [{ id: "u1", role: "user", content: process.argv[2] }],
});
const log = {
  onEvent: ({ event }) => console.log(event.type),
  onRunFinishedEvent: ({ event }) => console.log("outcome", event.outcome?.type),
};

await agent.runAgent({}, log);
// An approval ends the run with one interrupt per pending action.
for (const interrupt of agent.pendingInterrupts) {
  console.log("interrupt", interrupt.message);
}
if (agent.pendingInterrupts.length > 0) {
  // Approve ({approved: false, reason} denies); leave to the room's other voters
  // ("cancelled") what this user may not vote on.
  await agent.runAgent(
    {
      resume: agent.pendingInterrupts.map((interrupt) => ({
        interruptId: interrupt.id,
        status: interrupt.metadata.agentsite.may_vote ? "resolved" : "cancelled",
        payload: { approved: true, reason: "approved from examples/agui_approve.mjs" },
      })),
    },
    log,
  );
}
