// A frontend's client for taskapi: openapi-fetch over the types generated from /openapi.json.
// `tsc` proves each call matches the document; `node dist/client.js API_URL` runs them for real.
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Task = components["schemas"]["Task"];

const api = createClient<paths>({ baseUrl: process.argv[2] ?? "http://127.0.0.1:8000" });

async function main(): Promise<void> {
  const signup = await api.POST("/api/auth/signup", {
    body: { email: `typescript-${Date.now()}@example.com`, password: "correct horse" },
  });
  if (!signup.data) throw new Error(`sign-up failed: ${signup.error?.detail}`);
  const headers = { Authorization: `Bearer ${signup.data.access_token}` };
  // The document does not mark response fields as required, so the id is `string | undefined`.
  const user_id = signup.data.user.id!;

  const created = await api.POST("/api/users/{user_id}/tasks", {
    headers,
    params: { path: { user_id } },
    body: { title: "Try the TypeScript client" },
  });
  if (!created.data) throw new Error(`create failed: ${created.error?.detail}`);
  const task = { user_id, task_id: created.data.id! };

  const patched = await api.PATCH("/api/users/{user_id}/tasks/{task_id}", {
    headers,
    params: { path: task },
    body: { completed: true },
  });
  const listed = await api.GET("/api/users/{user_id}/tasks", {
    headers,
    params: { path: { user_id }, query: { page_size: 10 } },
  });
  const tasks: Task[] = listed.data ?? [];
  const deleted = await api.DELETE("/api/users/{user_id}/tasks/{task_id}", {
    headers,
    params: { path: task },
  });
  const after = await api.GET("/api/users/{user_id}/tasks/{task_id}", {
    headers,
    params: { path: task },
  });
  console.log(
    JSON.stringify({
      created: created.response.status,
      completed: patched.data?.completed,
      listed: tasks.map((t) => t.title),
      deleted: deleted.response.status,
      after: after.error?.code,
    }),
  );
}

// Mistakes the generated types must reject: `tsc` fails if any of these compiles.
export function mistakes(): void {
  const user = { user_id: "someone" };
  const task = { ...user, task_id: 1 };
  // @ts-expect-error a new task needs a title
  api.POST("/api/users/{user_id}/tasks", { params: { path: user }, body: { completed: true } });
  // @ts-expect-error completed is a boolean
  api.PATCH("/api/users/{user_id}/tasks/{task_id}", { params: { path: task }, body: { completed: "yes" } });
  // @ts-expect-error task_id is a number
  api.GET("/api/users/{user_id}/tasks/{task_id}", { params: { path: { ...user, task_id: "1" } } });
  // @ts-expect-error there is no such route
  api.GET("/api/tasks");
}

await main();
