import cors from '@fastify/cors'
import Fastify, { type FastifyInstance } from 'fastify'
import { saikuAuth, saikuErrors, type KeyStore } from '@saiku/fastify'

export function createApp(store: KeyStore): FastifyInstance {
  const app = Fastify()
  // Registered before saikuAuth, its onRequest hook runs first and ends a preflight with 204.
  app.register(cors, {
    origin: ['https://app.example.com'], // exact origins; never a reflected Origin
    allowedHeaders: ['Authorization', 'Content-Type'],
    exposedHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'], // readable from scripts
    maxAge: 600,
  })
  app.register(saikuAuth(store))
  app.register(saikuErrors())
  app.get('/me/tenant', async (request) => request.saiku!.tenant)
  return app
}
