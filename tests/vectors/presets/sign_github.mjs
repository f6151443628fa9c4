// Signs GitHub payloads with GitHub's own library, @octokit/webhooks-methods.
// generate.py runs this as `node --input-type=module -e <this file>` in the
// directory where the package is installed (so the import resolves there),
// with [{"secret", "payload"}, ...] in $GITHUB_ITEMS; it prints the
// X-Hub-Signature-256 values, in order.
import { sign, verify } from "@octokit/webhooks-methods";

const out = [];
for (const { secret, payload } of JSON.parse(process.env.GITHUB_ITEMS)) {
  const sig = await sign(secret, payload);
  if (!(await verify(secret, payload, sig))) throw new Error("octokit did not verify its own signature");
  out.push(sig);
}
process.stdout.write(JSON.stringify(out));
