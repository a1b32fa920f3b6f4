// Runs one section in a process of its own (a clean heap, no state left by another section) and hands its result to
// run.mjs over IPC.
const name = process.argv[2]
const { run } = await import(`./sections/${name}.mjs`)
const result = await run()
if (process.send) process.send({ result }, () => process.exit(0))
else {
  console.log(JSON.stringify(result, null, 2))
  process.exit(0)
}
