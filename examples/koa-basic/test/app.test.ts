import { describeExample } from '../../shared/example-test.js'
import { createApp } from '../src/app.js'

describeExample('@saiku/example-koa-basic', (store) => createApp(store).callback())
