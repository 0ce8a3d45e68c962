// What the operator CLI needs before it knows the command: kept small, so that
// the other commands do not load the dashboard's modules.

export const DASHBOARD_USAGE = `  members add --tenant SLUG --email EMAIL --role admin|viewer [--password-stdin]
  members list --tenant SLUG
  members set-role --email EMAIL --role admin|viewer
  members remove --email EMAIL
  members reset-password --email EMAIL [--password-stdin]
  members reset-two-factor --email EMAIL
  activity --tenant SLUG [--limit N]`

/** A mistake in the command line: usage, exit code 2. */
export class DashboardUsageError extends Error {}

export interface CommandOutput {
  json: boolean
  print(human: string, data: unknown): void
}

export const isDashboardCommand = (argv: readonly string[]): boolean => {
  const first = argv.find((arg) => !arg.startsWith('-'))
  return first === 'members' || first === 'activity'
}
