// Runs once when the server starts: mints the demo key and prints it with a curl line.
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME !== 'nodejs') return
  const { demo } = await import('./lib/saiku')
  const { key } = await demo().key
  const url = `http://127.0.0.1:${process.env.PORT ?? 3000}`
  console.log(`Saiku auth example (Next.js route handler) on ${url}`)
  console.log(`Demo key for tenant "acme" (shown once): ${key}`)
  console.log(`Try: curl ${url}/me/tenant -H "Authorization: Bearer ${key}"`)
}
