// The little of Bun's and Deno's globals the entries use, so that `tsc` checks them with Node's types alone.

export interface BunServer {
  readonly port: number
  requestIP(request: Request): { readonly address: string } | null
}

export interface DenoServeInfo {
  readonly remoteAddr: { readonly hostname: string }
}

declare global {
  const Bun: {
    readonly version: string
    serve(options: {
      port: number
      hostname: string
      fetch: (request: Request, server: BunServer) => Response | Promise<Response>
    }): BunServer
  }
  const Deno: {
    readonly version: { readonly deno: string }
    readonly env: { toObject(): Record<string, string> }
    serve(
      options: { port: number; hostname: string; onListen: (address: { port: number }) => void },
      handler: (request: Request, info: DenoServeInfo) => Response | Promise<Response>,
    ): unknown
  }
}
