// One proxy, two regions, the AWS SDK for JavaScript v3 as an app uses it: the region is in
// the endpoint URL's path prefix, and the request goes unsigned (the proxy signs it).
// Usage: node multi_region.mjs <proxy base URL> <name prefix> <region> [<region> ...]
// Prints one JSON object: what each region listed, and how a conflicting call was refused.
import { IvsClient, CreateChannelCommand, ListChannelsCommand, DeleteChannelCommand } from "@aws-sdk/client-ivs";

const [base, prefix, ...regions] = process.argv.slice(2);

function clientFor(region) {
  return new IvsClient({
    region,
    endpoint: `${base}/${region}`,
    // No AWS keys in the app: a signer that leaves the request as it is.
    credentials: { accessKeyId: "unused", secretAccessKey: "unused" },
    signer: { sign: async (request) => request },
    maxAttempts: 1,
  });
}

const created = {};
for (const region of regions) {
  const answer = await clientFor(region).send(new CreateChannelCommand({ name: `${prefix}-${region}` }));
  created[region] = answer.channel.arn;
}
const listed = {};
for (const region of regions) {
  const answer = await clientFor(region).send(new ListChannelsCommand({}));
  listed[region] = answer.channels.map((c) => c.name).filter((n) => n.startsWith(prefix)).sort();
}
let conflict = null;
try {
  // through the second region's prefix, the first region's channel: the proxy must refuse
  await clientFor(regions[1]).send(new DeleteChannelCommand({ arn: created[regions[0]] }));
} catch (error) {
  conflict = { name: error.name, status: error.$metadata?.httpStatusCode, message: error.message };
}
for (const region of regions) {
  await clientFor(region).send(new DeleteChannelCommand({ arn: created[region] }));
}
console.log(JSON.stringify({ created, listed, conflict }));
