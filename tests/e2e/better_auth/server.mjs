// Better Auth as a frontend runs it: email and password accounts in a SQLite file of its own and
// the JWT plugin on, serving /api/auth/* on 127.0.0.1:$PORT. It also mints the other kind of
// token a frontend may send: HS256 with the shared BETTER_AUTH_SECRET, at /shared-secret-token.
// Its verification mail is kept instead of sent: GET /verification-url?email= gives the link.
// Prints "ready" once it serves.
import { createServer } from "node:http";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { fromNodeHeaders, toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";
import { SignJWT } from "jose";

const { PORT, DATABASE_PATH, BETTER_AUTH_SECRET, JWT_ALG = "EdDSA" } = process.env;
const baseURL = `http://127.0.0.1:${PORT}`;
const verificationUrls = new Map();

const auth = betterAuth({
  baseURL,
  secret: BETTER_AUTH_SECRET,
  database: new Database(DATABASE_PATH),
  emailAndPassword: { enabled: true },
  emailVerification: {
    sendOnSignUp: true,
    sendVerificationEmail: async ({ user, url }) => verificationUrls.set(user.email, url),
  },
  telemetry: { enabled: false },
  plugins: [jwt({ jwks: { keyPairConfig: { alg: JWT_ALG } } })],
});

async function sharedSecretToken(request, response) {
  const session = await auth.api.getSession({ headers: fromNodeHeaders(request.headers) });
  if (!session) {
    response.writeHead(401).end();
    return;
  }
  const { id, email, name } = session.user;
  const token = await new SignJWT({ email, name })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(id)
    .setIssuer(baseURL)
    .setAudience(baseURL)
    .setIssuedAt()
    .setExpirationTime("15m")
    .sign(new TextEncoder().encode(BETTER_AUTH_SECRET));
  response.writeHead(200, { "Content-Type": "application/json" });
  response.end(JSON.stringify({ token }));
}

const { runMigrations } = await getMigrations(auth.options);
await runMigrations();
const handleAuth = toNodeHandler(auth);
createServer((request, response) => {
  const { pathname, searchParams } = new URL(request.url, baseURL);
  if (pathname === "/verification-url") {
    const url = verificationUrls.get(searchParams.get("email"));
    response.writeHead(url ? 200 : 404, { "Content-Type": "application/json" });
    response.end(JSON.stringify({ url }));
  } else if (request.url === "/shared-secret-token") {
    sharedSecretToken(request, response).catch((error) => {
      console.error(error);
      response.writeHead(500).end();
    });
  } else {
    handleAuth(request, response);
  }
}).listen(Number(PORT), "127.0.0.1", () => console.log("ready"));
